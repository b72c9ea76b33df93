-- tictactoe.lua - a movexd reducer (docs/REDUCERS.md): two players take X
-- and O by client id; the server decides every move.
--
-- State: { board = {"", ... 9 squares}, players = {X = id, O = id},
--          turn = "X" | "O", winner = null | "X" | "O" | "draw", moves = n }
-- Actions: {type = "join"}, {type = "move", payload = {square = 0..8}},
--          {type = "reset"} (a player, once the game is over).
local M = {}

local LINES = {
  {1, 2, 3}, {4, 5, 6}, {7, 8, 9},
  {1, 4, 7}, {2, 5, 8}, {3, 6, 9},
  {1, 5, 9}, {3, 5, 7},
}

local function empty_board()
  local b = {}
  for i = 1, 9 do b[i] = "" end
  return b
end

function M.init(params, ctx)
  return {
    board = empty_board(),
    players = movex.object(),
    turn = "X",
    winner = movex.null,
    moves = 0,
  }
end

local function mark_of(state, client)
  local p = state.players
  if p.X == client then return "X" end
  if p.O == client then return "O" end
  return nil
end

local function winner_after(board, square, mark, moves)
  local b = {}
  for i = 1, 9 do b[i] = board[i] end
  b[square + 1] = mark
  for _, l in ipairs(LINES) do
    if b[l[1]] == mark and b[l[2]] == mark and b[l[3]] == mark then return mark end
  end
  if moves == 9 then return "draw" end
  return nil
end

local function join(state, ctx)
  if mark_of(state, ctx.client) then return {} end -- joining twice changes nothing
  for _, m in ipairs({"X", "O"}) do
    if state.players[m] == nil then
      return {{op = "add", path = "/players/" .. m, value = ctx.client}}
    end
  end
  return nil, "room_full", "both seats are taken"
end

local function move(state, action, ctx)
  if state.winner ~= movex.null then return nil, "game_over", "the game is over" end
  local mark = mark_of(state, ctx.client)
  if not mark then return nil, "not_a_player", "join the game before moving" end
  if state.turn ~= mark then
    return nil, "not_your_turn", "it is " .. state.turn .. "'s turn"
  end
  local square = type(action.payload) == "table" and action.payload.square
  if math.type(square) ~= "integer" or square < 0 or square > 8 then
    return nil, "bad_square", "payload.square must be an integer from 0 to 8"
  end
  if state.board[square + 1] ~= "" then
    return nil, "square_taken", "square " .. square .. " is taken"
  end
  local effects = {
    {op = "replace", path = "/board/" .. square, value = mark},
    {op = "inc", path = "/moves", value = 1},
  }
  local w = winner_after(state.board, square, mark, state.moves + 1)
  if w then
    effects[#effects + 1] = {op = "replace", path = "/winner", value = w}
  else
    effects[#effects + 1] = {op = "replace", path = "/turn", value = mark == "X" and "O" or "X"}
  end
  return effects
end

local function reset(state, ctx)
  if not mark_of(state, ctx.client) then return nil, "not_a_player", "only players can reset" end
  if state.winner == movex.null then return nil, "game_not_over", "finish the game first" end
  return {
    {op = "replace", path = "/board", value = empty_board()},
    {op = "replace", path = "/turn", value = "X"},
    {op = "replace", path = "/winner", value = movex.null},
    {op = "replace", path = "/moves", value = 0},
  }
end

function M.reduce(state, action, ctx)
  if action.type == "join" then return join(state, ctx) end
  if action.type == "move" then return move(state, action, ctx) end
  if action.type == "reset" then return reset(state, ctx) end
  return nil, "unknown_action", "actions are join, move and reset"
end

return M
