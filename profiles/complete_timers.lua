-- Remove fired timers unless they were rescheduled after being claimed. Follows
-- timer_buckets.lua.
-- ARGV pairs of (id, stored timer as claimed)
local removed = 0
for i = 1, #ARGV, 2 do
  local tid, claimed = ARGV[i], ARGV[i + 1]
  local name = user_of(tid)
  local timers = timers_of(name)
  local found = index_of(timers, tid)
  if found and timers[found][3] == claimed then
    table.remove(timers, found)
    changed_user(name)
    removed = removed + 1
  elseif redis.call('HGET', DATA, tid) == claimed then  -- stored under its own id
    redis.call('ZREM', DUE, tid)
    redis.call('HDEL', DATA, tid)
    removed = removed + 1
  end
end
save_users()
return removed
