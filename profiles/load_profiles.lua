-- Read a batch of users: profile (version + JSON) and which of the asked event ids were
-- already applied.
-- KEYS: per user, its profile hash then its seen sorted set
-- ARGV: per user, the number n of event ids asked about, then those n ids
-- Returns per user: {version or nil, JSON or nil, {score or nil, ...}}
local out = {}
local a = 1
for i = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a])
  local row = redis.call('HMGET', KEYS[i], 'v', 'p')
  local seen = {}
  if n > 0 then
    seen = redis.call('ZMSCORE', KEYS[i + 1], unpack(ARGV, a + 1, a + n))
  end
  out[#out + 1] = {row[1], row[2], seen}
  a = a + 1 + n
end
return out
