-- Lease the due timers of one partition.
-- KEYS[1] due sorted set, KEYS[2] data hash; ARGV[1] now ms, ARGV[2] limit, ARGV[3] lease ms
-- Returns a flat list: id1, stored timer 1, id2, stored timer 2, ...
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2])
local leased_until = tonumber(ARGV[1]) + tonumber(ARGV[3])
local out = {}
for _, id in ipairs(ids) do
  local data = redis.call('HGET', KEYS[2], id)
  if data then
    redis.call('ZADD', KEYS[1], leased_until, id)
    out[#out + 1] = id
    out[#out + 1] = data
  else
    redis.call('ZREM', KEYS[1], id)
  end
end
return out
