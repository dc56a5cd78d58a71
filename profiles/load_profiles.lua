-- Read a batch of users: profile (version + stored form), which of the asked events were
-- already applied, and the erasure tombstone.
-- KEYS: per user, its profile (a string: the version in decimal, ':', the stored form;
-- before that a hash of v = version and p = stored form, still read until it is next
-- written), its dedup string (12-byte records: 8-byte event id digest, 4-byte event time
-- in epoch seconds), the sorted set of raw event ids stored before digests (usually
-- absent) and its tombstone (usually absent)
-- ARGV: per user, the asked digests packed into one string
-- Returns per user:
--   {version or nil, profile or nil, {1 or nil per digest}, legacy exists, erased or nil}
local RECORD, DIGEST = 12, 8

local function has(records, digest)
  local from = 1
  while true do
    local at = string.find(records, digest, from, true)
    if not at then return false end
    if (at - 1) % RECORD == 0 then return true end
    from = at + 1
  end
end

-- the version and the stored form (false, false when there is no profile)
local function profile(key)
  if redis.call('TYPE', key).ok == 'hash' then
    local row = redis.call('HMGET', key, 'v', 'p')
    return row[1], row[2]
  end
  local stored = redis.call('GET', key)
  if not stored then return false, false end
  local colon = string.find(stored, ':', 1, true)
  return string.sub(stored, 1, colon - 1), string.sub(stored, colon + 1)
end

local out = {}
for i = 1, #KEYS, 4 do
  local asked = ARGV[(i + 3) / 4]
  local version, doc = profile(KEYS[i])
  local seen = {}
  if #asked > 0 then
    local records = redis.call('GET', KEYS[i + 1]) or ''
    for at = 1, #asked, DIGEST do
      seen[#seen + 1] = has(records, string.sub(asked, at, at + DIGEST - 1)) and 1 or false
    end
  end
  out[#out + 1] = {
    version, doc, seen, redis.call('EXISTS', KEYS[i + 2]), redis.call('GET', KEYS[i + 3])
  }
end
return out
