-- Schedule (insert or replace) and cancel timers of one partition.
-- KEYS[1] due sorted set, KEYS[2] data hash
-- ARGV[1] the number n of schedules; then n triples (id, due ms, stored timer); then ids to
-- cancel
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local at = 2 + 3 * i
  redis.call('HSET', KEYS[2], ARGV[at], ARGV[at + 2])
  redis.call('ZADD', KEYS[1], ARGV[at + 1], ARGV[at])
end
for i = 2 + 3 * n, #ARGV do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
end
return n
