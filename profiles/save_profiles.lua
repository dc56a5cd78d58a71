-- Compare-and-set a batch of profiles, each with the events it applied.
-- KEYS: per user, its profile hash (v = version, p = stored profile), its dedup string
-- (see load_profiles.lua) and the sorted set of raw event ids stored before digests
-- ARGV[1]: the dedup window (records kept per user)
-- then per user: expected version, profile ('' erases), the applied events' records
-- packed into one string, and the age cutoff (epoch seconds): records older than it are
-- dropped from the oldest-applied end
-- Returns per user: 1 written, 0 refused (the version moved: another writer was first)
local RECORD = 12
local keep = tonumber(ARGV[1]) * RECORD

local function remember(key, legacy, applied, cutoff)
  local records = (redis.call('GET', key) or '') .. applied
  local first = math.max(1, #records - keep + 1)
  while first <= #records and struct.unpack('>I4', records, first + 8) < cutoff do
    first = first + RECORD
  end
  if first > #records then
    redis.call('DEL', key)
  else
    redis.call('SET', key, string.sub(records, first))
  end
  redis.call('ZREMRANGEBYSCORE', legacy, '-inf', '(' .. string.format('%.0f', cutoff * 1000))
end

local out = {}
local a = 2
for i = 1, #KEYS, 3 do
  local expected, doc, applied = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local cutoff = tonumber(ARGV[a + 3])
  a = a + 4
  local current = redis.call('HGET', KEYS[i], 'v') or '0'
  if current ~= expected then
    out[#out + 1] = 0
  else
    if doc == '' then
      redis.call('DEL', KEYS[i])
    else
      redis.call('HSET', KEYS[i], 'v', tostring(tonumber(current) + 1), 'p', doc)
    end
    if #applied > 0 then
      remember(KEYS[i + 1], KEYS[i + 2], applied, cutoff)
    end
    out[#out + 1] = 1
  end
end
return out
