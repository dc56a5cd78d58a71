-- Read a batch of users: profile (version + stored form), which of the asked events were
-- already applied, and the erasure tombstone.
-- KEYS: per user, its profile hash, its dedup string (12-byte records: 8-byte event id
-- digest, 4-byte event time in epoch seconds), the sorted set of raw event ids stored
-- before digests (usually absent) and its tombstone (usually absent)
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

local out = {}
for i = 1, #KEYS, 4 do
  local asked = ARGV[(i + 3) / 4]
  local row = redis.call('HMGET', KEYS[i], 'v', 'p')
  local seen = {}
  if #asked > 0 then
    local records = redis.call('GET', KEYS[i + 1]) or ''
    for at = 1, #asked, DIGEST do
      seen[#seen + 1] = has(records, string.sub(asked, at, at + DIGEST - 1)) and 1 or false
    end
  end
  out[#out + 1] = {
    row[1], row[2], seen, redis.call('EXISTS', KEYS[i + 2]), redis.call('GET', KEYS[i + 3])
  }
end
return out
