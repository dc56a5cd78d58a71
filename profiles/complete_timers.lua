-- Remove fired timers unless they were rescheduled after being claimed.
-- KEYS[1] due sorted set, KEYS[2] data hash; ARGV pairs of (id, stored timer as claimed)
local removed = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[2], ARGV[i]) == ARGV[i + 1] then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('HDEL', KEYS[2], ARGV[i])
    removed = removed + 1
  end
end
return removed
