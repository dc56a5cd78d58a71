-- Read a batch of users: profile (version + stored form), which of the asked events were
-- already applied, and the erasure tombstone. Follows stored_user.lua.
-- KEYS: per user, its profile key and the key its dedup records had before they moved
-- into it (see stored_user.lua), the sorted set of raw event ids stored before digests
-- (usually absent) and its tombstone (usually absent)
-- ARGV: per user, the asked digests packed into one string
-- Returns per user:
--   {version, profile ('' when none), {1 or nil per digest}, legacy exists, erased or nil}
local DIGEST = 8

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
  local version, records, doc = read_user(KEYS[i], KEYS[i + 1])
  local seen = {}
  for at = 1, #asked, DIGEST do
    seen[#seen + 1] = has(records, string.sub(asked, at, at + DIGEST - 1)) and 1 or false
  end
  out[#out + 1] = {
    version, doc, seen, redis.call('EXISTS', KEYS[i + 2]), redis.call('GET', KEYS[i + 3])
  }
end
return out
