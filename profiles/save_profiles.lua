-- Compare-and-set a batch of profiles, each with the events it applied and the counter
-- increments it brings. Follows stored_user.lua.
-- KEYS: per user, its profile key and the key its dedup records had before they moved
-- into it (see stored_user.lua), the sorted set of raw event ids stored before digests,
-- its erasure tombstone, and the counters hash of its hash slot
-- ARGV[1]: the dedup window (records kept per user); ARGV[2]: how long a tombstone lasts (ms)
-- then per user: expected version, profile ('' deletes it), the applied events' records
-- packed into one string, the age cutoff (epoch seconds): records older than it are
-- dropped from the oldest-applied end, whether the stored dedup records go first ('1';
-- '' keeps them), the erase time (epoch ms; '' when not erased): the tombstone keeps
-- the latest erase time, and the counter increments as a JSON array of [field, amount]
-- pairs ('' when none), added only if the write is made
-- Returns per user: 1 written, 0 refused (the version moved: another writer was first)
local keep = tonumber(ARGV[1]) * RECORD
local tombstone_ms = ARGV[2]

-- the newest records of the window, less those older than cutoff at the oldest end
local function remember(records, applied, cutoff)
  records = records .. applied
  local first = math.max(1, #records - keep + 1)
  while first <= #records and struct.unpack('>I4', records, first + 8) < cutoff do
    first = first + RECORD
  end
  return string.sub(records, first)
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

local out = {}
local a = 3
for i = 1, #KEYS, 5 do
  local expected, doc, applied = ARGV[a], ARGV[a + 1], ARGV[a + 2]
  local cutoff, forget, erased = tonumber(ARGV[a + 3]), ARGV[a + 4], ARGV[a + 5]
  local increments = ARGV[a + 6]
  a = a + 7
  local current, records, _, apart = read_user(KEYS[i], KEYS[i + 1])
  if current ~= expected then
    out[#out + 1] = 0
  else
    if forget ~= '' then
      records = ''
      redis.call('DEL', KEYS[i + 2])
    end
    if erased ~= '' then
      bury(KEYS[i + 3], erased)
    end
    if #applied > 0 then
      records = remember(records, applied, cutoff)
      redis.call('ZREMRANGEBYSCORE', KEYS[i + 2], '-inf',
        '(' .. string.format('%.0f', cutoff * 1000))
    end
    local version = doc == '' and '0' or string.format('%d', tonumber(current) + 1)
    write_user(KEYS[i], KEYS[i + 1], version, records, doc, apart)
    if #increments > 0 then
      count(KEYS[i + 4], increments)
    end
    out[#out + 1] = 1
  end
end
return out
