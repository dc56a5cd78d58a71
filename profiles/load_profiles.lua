-- Read a batch of users: profile (version + JSON) and which of the asked events were
-- already applied.
-- KEYS: per user, its profile hash, its dedup sorted set (event id digests) and the
-- sorted set of raw event ids stored before digests (usually absent)
-- ARGV: per user, the number n of events asked about, then those n digests
-- Returns per user: {version or nil, JSON or nil, {score or nil, ...}, legacy set exists}
local out = {}
local a = 1
for i = 1, #KEYS, 3 do
  local n = tonumber(ARGV[a])
  local row = redis.call('HMGET', KEYS[i], 'v', 'p')
  local seen = {}
  if n > 0 then
    seen = redis.call('ZMSCORE', KEYS[i + 1], unpack(ARGV, a + 1, a + n))
  end
  out[#out + 1] = {row[1], row[2], seen, redis.call('EXISTS', KEYS[i + 2])}
  a = a + 1 + n
end
return out
