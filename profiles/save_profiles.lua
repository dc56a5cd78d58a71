-- Compare-and-set a batch of profiles, each with the events it applied.
-- KEYS: per user, its profile hash (v = version, p = stored profile), its dedup set and the
-- sorted set of raw event ids stored before digests
-- ARGV[1]: the dedup window (digests kept per user); ARGV[2]: their maximum age (ms,
-- counted back from the user's newest applied event)
-- then per user: expected version, profile ('' erases), n, then n pairs (event ms, digest)
-- Returns per user: 1 written, 0 refused (the version moved: another writer was first)
local window, max_age = tonumber(ARGV[1]), tonumber(ARGV[2])

local function trim(seen, legacy)
  redis.call('ZREMRANGEBYRANK', seen, 0, -(window + 1))
  local newest = redis.call('ZRANGE', seen, -1, -1, 'WITHSCORES')[2]
  if newest then
    local cutoff = '(' .. string.format('%.0f', tonumber(newest) - max_age)
    redis.call('ZREMRANGEBYSCORE', seen, '-inf', cutoff)
    redis.call('ZREMRANGEBYSCORE', legacy, '-inf', cutoff)
  end
end

local out = {}
local a = 3
for i = 1, #KEYS, 3 do
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
      trim(KEYS[i + 1], KEYS[i + 2])
    end
    out[#out + 1] = 1
  end
  a = a + 2 * n
end
return out
