-- attacks.lua - a reducer that misbehaves on request (test/unit/test_lua.c,
-- test/integration/lua-sandbox.test.mjs): each action type is one attack the
-- sandbox must stop; "ok" proves the VM still works afterwards.
local M = {}
local saved_state -- a view kept past its call (must die with it)

local function spin() while true do end end

local A = {}
A.ok = function(state, action, ctx)
  return {{op = "inc", path = "/n", value = 1}}
end
A.loop = spin
A.pcall_loop = function()
  for _ = 1, 1000 do pcall(spin) end
  return {}
end
A.xpcall_loop = function()
  xpcall(spin, spin)
  return {}
end
A.coroutine_loop = function()
  local co = coroutine.create(spin)
  coroutine.resume(co)
  return {}
end
A.coroutine_wrap_loop = function()
  local f = coroutine.wrap(function() pcall(spin) end)
  pcall(f)
  return {}
end
-- a tree of coroutines that each end before their own count hook fires
-- (fewer than 1000 instructions of their own), so no hook ever charges
-- them: 30^6 short threads, unbounded without a charge per coroutine
local function tree(d)
  if d == 0 then return end
  for _ = 1, 30 do coroutine.wrap(tree)(d - 1) end
end
A.coroutine_tree = function() tree(6); return {} end
local function tree_create(d)
  if d == 0 then return end
  for _ = 1, 30 do coroutine.resume(coroutine.create(tree_create), d - 1) end
end
A.coroutine_tree_create = function() tree_create(6); return {} end
-- pairs over a read-only proxy must not hand out the table behind it
A.pairs_G_write = function()
  local _, g = pairs(_G)
  g.leak = 1
  return {}
end
A.pairs_lib_write = function()
  local _, t = pairs(string)
  t.rep = nil
  return {}
end
A.pairs_lib_walk = function()
  local n = 0
  for k, v in pairs(string) do n = n + 1 end
  for k, v in pairs(_G) do n = n + 1 end
  if n < 20 then error("pairs over the libraries found only " .. n) end
  return {}
end
A.index_loop = function()
  local t = setmetatable({}, {__index = function() spin() end})
  return t.x
end
A.close_loop = function()
  local x <close> = setmetatable({}, {__close = function() spin() end})
  spin()
end
A.memory = function()
  local t, i = {}, 0
  while true do i = i + 1; t[i] = {i, i, i, i} end
end
A.memory_pcall = function()
  local keep = {}
  for _ = 1, 1000 do
    pcall(function() local i = 0; while true do i = i + 1; keep[#keep + 1] = ("x"):rep(1000) .. i end end)
  end
  return {}
end
A.concat_bomb = function()
  local s = "x"
  while true do s = s .. s end
end
A.rep = function() return string.rep("x", 2 ^ 40) end
A.rep_method = function() return ("x"):rep(1 << 40) end
A.rep_empty = function() string.rep("", 1 << 40); return {} end
A.rep_sep = function() string.rep("", 1 << 30, ""); return {} end
A.pattern = function()
  local s = string.rep("a", 3000)
  return {s:find(string.rep("a*", 20) .. "b")}
end
A.pattern_gsub = function()
  local s = string.rep("a", 3000)
  s:gsub(string.rep("a-", 10) .. "b", "")
  return {}
end
A.pattern_balance = function()
  -- %b scans to the end of the subject from every start: n^2 on "((((...."
  local s = string.rep("(", 100000)
  return {s:find("%b()")}
end
-- single VM instructions whose cost grows with the strings (one count
-- each): ==, < and .. on long strings, tonumber of a long string. Each
-- makes two distinct equal 4 MiB strings by doubling (.. is not charged).
local function long_pair()
  local a, b = "x", "x"
  for _ = 1, 22 do a = a .. a; b = b .. b end
  return a, b
end
A.long_eq = function()
  local a, b = long_pair()
  local n = 0
  while true do if a == b then n = n + 1 end end
end
A.long_lt = function()
  local a, b = long_pair()
  local n = 0
  while true do if a <= b then n = n + 1 end end
end
A.long_concat = function()
  local a = long_pair()
  local keep = {}
  while true do keep[1] = a .. "y" end
end
A.long_tonumber = function()
  local s = " "
  for _ = 1, 22 do s = s .. s end
  while true do tonumber(s) end
end
A.find_huge = function()
  local s = string.rep("ab", 1 << 19) -- 1 MiB
  for _ = 1, 1000 do s:find("abc", 1, true) end
  return {}
end
A.table_move = function() table.move({1}, 1, math.maxinteger, 2); return {} end
A.table_concat = function() table.concat({}, "", 1, 1 << 40); return {} end
A.table_unpack = function() table.unpack({}, 1, 1 << 40); return {} end
A.format_width = function() return {{op = "add", path = "/s", value = string.format("%099d", 1)}} end
A.format_huge = function() return {{op = "add", path = "/s", value = string.format("%9999d", 1)}} end
A.load = function() return load("return {}")() end
A.loadstring = function() return loadstring("return {}")() end
A.dofile = function() return dofile("/etc/passwd") end
A.loadfile = function() return loadfile("/etc/passwd") end
A.require = function() return require("os") end
A.os_execute = function() return os.execute("true") end
A.io_open = function() return io.open("/etc/passwd") end
A.debug_sethook = function() return debug.sethook() end
A.string_dump = function() return string.dump(spin) end
A.collectgarbage = function() collectgarbage("stop"); return {} end
A.print = function() print("hi"); return {} end
A.gc = function() setmetatable({}, {__gc = function() end}); return {} end
A.random = function() return math.random() end
A.write_state = function(state) state.n = 99; return {} end
A.write_state_deep = function(state) state.obj.k = 99; return {} end
A.rawset_state = function(state) rawset(state, "n", 99); return {} end
A.write_global = function() x_global = 1; return {} end
A.write_G = function() _G.string = nil; return {} end
A.write_lib = function() string.rep = function() end; return {} end
A.rawset_G = function() rawset(_G, "print", function() end); return {} end
A.rawset_lib = function() rawset(string, "rep", nil); return {} end
A.string_mt = function() getmetatable("").__index = {}; return {} end
A.keep_view = function(state) saved_state = state; return {} end
A.use_kept_view = function() return {{op = "add", path = "/x", value = saved_state.n}} end
A.ret_function = function() return {{op = "add", path = "/x", value = spin}} end
A.ret_coroutine = function() return {{op = "add", path = "/x", value = coroutine.create(spin)}} end
A.ret_nan = function() return {{op = "add", path = "/x", value = 0 / 0}} end
A.ret_huge = function() return {{op = "add", path = "/x", value = math.huge}} end
A.ret_neg_huge = function() return {{op = "add", path = "/x", value = -math.huge}} end
A.ret_cycle = function() local t = {}; t.self = t; return {{op = "add", path = "/x", value = t}} end
A.ret_deep = function()
  local t = {}
  local c = t
  for _ = 1, 200 do c.d = {}; c = c.d end
  return {{op = "add", path = "/x", value = t}}
end
A.ret_bad_utf8 = function() return {{op = "add", path = "/x", value = "\xff\xfe"}} end
A.ret_nul = function() return {{op = "add", path = "/x", value = "a\0b"}} end
A.ret_bad_key = function() return {{op = "add", path = "/x", value = {[true] = 1}}} end
A.ret_mixed = function() return {{op = "add", path = "/x", value = {1, 2, a = 3}}} end
A.ret_many = function()
  local op = {op = "test", path = "/n", value = 0}
  local e = {}
  for i = 1, 1000000 do e[i] = op end
  return e
end
A.ret_not_list = function() return "nope" end
A.ret_bad_op = function() return {{op = "frob", path = "/x"}} end
A.ret_bad_path = function() return {{op = "add", path = "/a/b/c", value = 1}} end
A.ret_second_bad = function() return {{op = "inc", path = "/n", value = 1}, {op = "remove", path = "/nope"}} end
A.error = function() error("boom") end
A.error_table = function() error({}) end
A.reject = function() return nil, "not_allowed", "no, " .. string.rep("é", 200) end
A.reject_bad_code = function() return nil, "Not-Valid", "x" end
A.reject_no_code = function() return nil end

function M.reduce(state, action, ctx)
  local f = A[action.type]
  if not f then return nil, "unknown_attack", tostring(action.type) end
  return f(state, action, ctx)
end

return M
