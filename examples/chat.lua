-- chat.lua - a movexd reducer (docs/REDUCERS.md): the server stamps each
-- message with its time and an id (Movex's "master actions": the client
-- cannot choose either) and keeps the last 500.
--
-- State: { messages = [ {id = seq, from = client, text = "...", time = ms} ] }
-- Actions: {type = "say", payload = {text = "..."}} (1..2000 bytes of text)
local M = {}

local KEEP = 500
local MAX_TEXT = 2000

function M.init(params, ctx)
  return {messages = movex.array()}
end

function M.reduce(state, action, ctx)
  if action.type ~= "say" then
    return nil, "unknown_action", "the only action is say"
  end
  local text = type(action.payload) == "table" and action.payload.text
  if type(text) ~= "string" or #text == 0 then
    return nil, "empty_message", "payload.text must be a non-empty string"
  end
  if #text > MAX_TEXT then
    return nil, "message_too_long", "at most " .. MAX_TEXT .. " bytes"
  end
  local effects = {}
  -- trim from the front so the list never passes KEEP entries
  local extra = #state.messages + 1 - KEEP
  for _ = 1, extra do
    effects[#effects + 1] = {op = "remove", path = "/messages/0"}
  end
  effects[#effects + 1] = {
    op = "add",
    path = "/messages/-",
    value = {id = ctx.seq, from = ctx.client, text = text, time = ctx.time},
  }
  return effects
end

return M
