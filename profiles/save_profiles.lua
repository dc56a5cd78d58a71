-- Compare-and-set a batch of profiles, each with the events it applied and the counter
-- increments it brings.
-- KEYS: per user, its profile (see load_profiles.lua; a hash stored before becomes a
-- string when written), its dedup string
-- (see load_profiles.lua), the sorted set of raw event ids stored before digests, its
-- erasure tombstone, and the counters hash of its hash slot
-- ARGV[1]: the dedup window (records kept per user); ARGV[2]: how long a tombstone lasts (ms)
-- then per user: expected version, profile ('' deletes it), the applied events' records
-- packed into one string, the age cutoff (epoch seconds): records older than it are
-- dropped from the oldest-applied end, whether the stored dedup records go first ('1';
-- '' keeps them), the erase time (epoch ms; '' when not erased): the tombstone keeps
-- the latest erase time, and the counter increments as a JSON array of [field, amount]
-- pairs ('' when none), added only if the write is made
-- Returns per user: 1 written, 0 refused (the version moved: another writer was first)
local RECORD = 12
local keep = tonumber(ARGV[1]) * RECORD
local tombstone_ms = ARGV[2]

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

local function bury(tombstone, erased)
  local before = tonumber(redis.call('GET', tombstone) or '0')
  redis.call('SET', tombstone, string.format('%.0f', math.max(before, tonumber(erased))),
    'PX', tombstone_ms)
end

-- counters are aggregate, not the user's: an erasure or a forgetting write leaves them
local function count(key, increments)
  for _, increment in ipairs(cjson.decode(increments)) do
    -- %.17g: every double survives the trip to HINCRBYFLOAT (tostring keeps 14 digits)
    redis.call('HINCRBYFLOAT', key, increment[1], string.format('%.17g', increment[2]))
  end
end

-- the profile's version ('0' when there is none), without reading the whole profile
local function version(key)
  if redis.call('TYPE', key).ok == 'hash' then
    return redis.call('HGET', key, 'v') or '0'
  end
  local head = redis.call('GETRANGE', key, 0, 20)
  if head == '' then return '0' end
  return string.sub(head, 1, string.find(head, ':', 1, true) - 1)
end

local out = {}
local a = 3
for i = 1, #KEYS, 5 do
  local expected, doc, applied = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local cutoff, forget, erased = tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5]
  local increments = ARGV[a + 6]
  a = a + 7
  local current = version(KEYS[i])
  if current ~= expected then
    out[#out + 1] = 0
  else
    if forget ~= '' then
      redis.call('DEL', KEYS[i + 1], KEYS[i + 2])
    end
    if erased ~= '' then
      bury(KEYS[i + 3], erased)
    end
    if doc == '' then
      redis.call('DEL', KEYS[i])
    else
      -- SET replaces a hash stored before
      redis.call('SET', KEYS[i], string.format('%d', tonumber(current) + 1) .. ':' .. doc)
    end
    if #applied > 0 then
      remember(KEYS[i + 1], KEYS[i + 2], applied, cutoff)
    end
    if #increments > 0 then
      count(KEYS[i + 4], increments)
    end
    out[#out + 1] = 1
  end
end
return out
