-- Compare-and-set one user's profile and record the events it applied.
-- KEYS[1] profile hash (v = version, p = JSON), KEYS[2] seen sorted set
-- ARGV[1] expected version, ARGV[2] profile JSON ('' erases), ARGV[3] dedup window,
-- ARGV[4..] pairs of (event time ms, event id)
local current = redis.call('HGET', KEYS[1], 'v') or '0'
if current ~= ARGV[1] then
  return 0
end
if ARGV[2] == '' then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'v', tostring(tonumber(current) + 1), 'p', ARGV[2])
end
if #ARGV >= 5 then
  redis.call('ZADD', KEYS[2], unpack(ARGV, 4))
  redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -(tonumber(ARGV[3]) + 1))
end
return 1
