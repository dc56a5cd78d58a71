-- Remove fired timers unless they were rescheduled after being claimed. Follows
-- timer_buckets.lua.
-- ARGV pairs of (id, stored timer as claimed)
local removed = 0
for i = 1, #ARGV, 2 do
  local tid, claimed = ARGV[i], ARGV[i + 1]
  if remove_timer(tid, claimed) then
    removed = removed + 1
  elseif redis.call('HGET', DATA, tid) == claimed then  -- stored under its own id
    drop_own_entry(tid)
    removed = removed + 1
  end
end
save_users()
return removed
