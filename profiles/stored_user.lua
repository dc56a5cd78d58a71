-- What Redis holds of a user, read and written by load_profiles.lua and save_profiles.lua
-- (each is this file followed by its own). One string under the profile key:
--
--   <version>:<length of the records>:<dedup records><stored profile>
--
-- the version in decimal (compare-and-set; 0 while there is no profile), the dedup
-- records 12 bytes each (8-byte event id digest, 4-byte event time in epoch seconds),
-- oldest applied first, and the stored profile (profiles/stored.py; empty when there is
-- none). One key instead of two saves Redis a key's overhead per user (~90 bytes).
--
-- Stored before, and still read: the profile as a hash (v = version, p = stored profile)
-- and the records in a string key of their own. The next write merges them into one
-- string and deletes the records' key.

local RECORD = 12

-- version, dedup records, stored profile ('' when none), and whether the records came
-- from a key of their own (to be deleted once merged). A string this file did not write
-- is all stored profile: the profile's reader reports it corrupt, for this user alone.
local function read_user(profile_key, dedup_key)
  local kind = redis.call('TYPE', profile_key).ok
  if kind == 'string' then
    local stored = redis.call('GET', profile_key)
    local version, length, first = string.match(stored, '^(%d+):(%d+):()')
    local last = first and first + tonumber(length) - 1
    if not last or last > #stored then
      return '0', '', stored, false
    end
    return version, string.sub(stored, first, last), string.sub(stored, last + 1), false
  end
  local records = redis.call('GET', dedup_key) or ''
  if kind == 'hash' then
    local row = redis.call('HMGET', profile_key, 'v', 'p')
    return row[1] or '0', records, row[2] or '', #records > 0
  end
  return '0', records, '', #records > 0
end

-- store what read_user reads; nothing at all for no profile and no records
local function write_user(profile_key, dedup_key, version, records, doc, apart)
  if apart then
    redis.call('DEL', dedup_key)
  end
  if doc == '' and records == '' then
    redis.call('DEL', profile_key)
  else
    -- SET replaces a hash stored before
    redis.call('SET', profile_key, version .. ':' .. #records .. ':' .. records .. doc)
  end
end
