-- The pending timers of one partition: every one (no ARGV), or those with the ids in
-- ARGV. Follows timer_buckets.lua.
-- Returns a flat list: id1, due or leased-until ms 1, stored timer 1, id2, ...
local out = {}

local function add(tid, due, stored)
  out[#out + 1] = tid
  out[#out + 1] = due
  out[#out + 1] = stored
end

local function add_own_entry(tid)  -- a timer stored before under its own id
  local stored = redis.call('HGET', DATA, tid)
  local due = redis.call('ZSCORE', DUE, tid)
  if stored and due then add(tid, tonumber(due), stored) end
end

if #ARGV == 0 then
  for _, name in ipairs(redis.call('ZRANGE', DUE, 0, -1)) do
    if string.sub(name, 1, 1) == '@' then
      for tid, timer in pairs(user_named(name).timers) do add(tid, timer[1], timer[2]) end
    else
      add_own_entry(name)
    end
  end
else
  for _, tid in ipairs(ARGV) do
    local timer = user_named(user_of(tid)).timers[tid]
    if timer then
      add(tid, timer[1], timer[2])
    else
      add_own_entry(tid)
    end
  end
end
return out
