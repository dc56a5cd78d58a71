-- Lease the due timers of one partition. Follows timer_buckets.lua.
-- ARGV[1] now ms, ARGV[2] limit, ARGV[3] lease ms
-- Returns a flat list: id1, stored timer 1, id2, stored timer 2, ... (soonest users
-- first, each user's due timers soonest first)
local now, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local leased_until = now + tonumber(ARGV[3])
local names = redis.call('ZRANGE', DUE, '-inf', now, 'BYSCORE', 'LIMIT', 0, limit)
local out = {}

local function soonest_first(a, b)
  return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1])
end

for _, name in ipairs(names) do
  if #out >= 2 * limit then break end
  if string.sub(name, 1, 1) == '@' then
    local user = user_named(name)
    local due = {}
    for tid, timer in pairs(user.timers) do
      if timer[1] <= now then due[#due + 1] = {tid, timer[1]} end
    end
    table.sort(due, soonest_first)
    for _, pick in ipairs(due) do
      if #out >= 2 * limit then break end
      local timer = user.timers[pick[1]]
      timer[1] = leased_until
      out[#out + 1] = pick[1]
      out[#out + 1] = timer[2]
    end
    changed_user(name)  -- also mends a score out of step with the entry
  else  -- a timer stored before under its own id
    local data = redis.call('HGET', DATA, name)
    if data then
      redis.call('ZADD', DUE, leased_until, name)
      out[#out + 1] = name
      out[#out + 1] = data
    else
      redis.call('ZREM', DUE, name)
    end
  end
end
save_users()
return out
