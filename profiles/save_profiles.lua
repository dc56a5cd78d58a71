-- Compare-and-set a batch of profiles, each with the events it applied.
-- KEYS: per user, its profile hash (v = version, p = JSON) then its seen sorted set
-- ARGV[1]: the dedup window (event ids kept per user)
-- then per user: expected version, JSON ('' erases), n, then n pairs (event ms, event id)
-- Returns per user: 1 written, 0 refused (the version moved: another writer was first)
local window = tonumber(ARGV[1])
local out = {}
local a = 2
for i = 1, #KEYS, 2 do
  local expected, doc, n = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  a = a + 3
  local current = redis.call('HGET', KEYS[i], 'v') or '0'
  if current ~= expected then
    out[#out + 1] = 0
  else
    if doc == '' then
      redis.call('DEL', KEYS[i])
    else
      redis.call('HSET', KEYS[i], 'v', tostring(tonumber(current) + 1), 'p', doc)
    end
    if n > 0 then
      redis.call('ZADD', KEYS[i + 1], unpack(ARGV, a, a + 2 * n - 1))
      redis.call('ZREMRANGEBYRANK', KEYS[i + 1], 0, -(window + 1))
    end
    out[#out + 1] = 1
  end
  a = a + 2 * n
end
return out
