-- How one partition's timers are stored; the timer scripts are this file followed by
-- their own. KEYS[1] the sorted set, KEYS[2] the hash, of the partition.
--
-- A user's timers are one entry of each, named '@' and the user id (a timer id is
-- rule|user|key, profiles.timers.timer_id; the user is the part between the first and
-- the last '|': a rule id has none, a user id may): in the sorted set scored by the
-- user's soonest timer (due, or leased until), in the hash a MessagePack array of
-- (timer id without the user, rule|key; due or leased-until ms; stored timer) triples. One
-- entry per user instead of one per timer halves what Redis spends on them: each entry
-- of a sorted set and a hash costs ~200 bytes beside what it holds.
--
-- The hash's fields '#timers' and '#users' count the timers in such entries and the
-- entries. Timers stored before, one entry each under their own id (an id never starts
-- with '@' or '#'), are still claimed, completed, found and listed, and a timer
-- scheduled or cancelled again leaves that form.

local DUE, DATA = KEYS[1], KEYS[2]

-- the name of the entry that holds timer tid, and tid as the entry holds it (rule|key)
local function user_of(tid)
  local first = string.find(tid, '|', 1, true)
  local last = string.match(tid, '^.*()|')
  return '@' .. string.sub(tid, first + 1, last - 1),
    string.sub(tid, 1, first) .. string.sub(tid, last + 1)
end

-- the timer id that an entry named name holds as short
local function full_id(name, short)
  local first = string.find(short, '|', 1, true)
  return string.sub(short, 1, first) .. string.sub(name, 2) .. '|' .. string.sub(short, first + 1)
end

-- the entries read this call, by name: {timers = {id -> {due, stored}}, count, size}
-- (size: how many timers it held when read)
local users = {}
-- the names of the entries changed this call, in the order first changed
local changed, changed_order = {}, {}

local function user_named(name)
  local user = users[name]
  if user == nil then
    local timers, count = {}, 0
    local packed = redis.call('HGET', DATA, name)
    if packed then
      local flat = cmsgpack.unpack(packed)
      for i = 1, #flat, 3 do
        timers[full_id(name, flat[i])] = {flat[i + 1], flat[i + 2]}
        count = count + 1
      end
    end
    user = {timers = timers, count = count, size = count}
    users[name] = user
  end
  return user
end

local function changed_user(name)
  if not changed[name] then
    changed[name] = true
    changed_order[#changed_order + 1] = name
  end
end

-- schedule, or replace, timer tid
local function put_timer(tid, due, stored)
  local name = user_of(tid)
  local user = user_named(name)
  if user.timers[tid] == nil then user.count = user.count + 1 end
  user.timers[tid] = {due, stored}
  changed_user(name)
end

-- remove timer tid (only if its stored form is still ``stored``, when given); whether it was
local function remove_timer(tid, stored)
  local name = user_of(tid)
  local user = user_named(name)
  local timer = user.timers[tid]
  if timer == nil or (stored ~= nil and timer[2] ~= stored) then return false end
  user.timers[tid] = nil
  user.count = user.count - 1
  changed_user(name)
  return true
end

-- write back every changed entry (none left: the entry goes) and the two counts
local function save_users()
  local timers_added, users_added = 0, 0
  for _, name in ipairs(changed_order) do
    local user = users[name]
    timers_added = timers_added + user.count - user.size
    if user.count == 0 then
      redis.call('HDEL', DATA, name)
      redis.call('ZREM', DUE, name)
      if user.size > 0 then users_added = users_added - 1 end
    else
      local flat, soonest = {}, nil
      for tid, timer in pairs(user.timers) do
        local _, short = user_of(tid)
        flat[#flat + 1] = short
        flat[#flat + 1] = timer[1]
        flat[#flat + 1] = timer[2]
        if soonest == nil or timer[1] < soonest then soonest = timer[1] end
      end
      redis.call('HSET', DATA, name, cmsgpack.pack(flat))
      redis.call('ZADD', DUE, soonest, name)
      if user.size == 0 then users_added = users_added + 1 end
    end
  end
  if timers_added ~= 0 then redis.call('HINCRBY', DATA, '#timers', timers_added) end
  if users_added ~= 0 then redis.call('HINCRBY', DATA, '#users', users_added) end
end

-- drop a timer stored before under its own id
local function drop_own_entry(tid)
  if redis.call('HDEL', DATA, tid) == 1 then
    redis.call('ZREM', DUE, tid)
  end
end
