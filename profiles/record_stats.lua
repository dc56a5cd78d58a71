-- Add one batch's activity to the shop-wide statistics (see profiles/aggregates.py).
-- Every key starts with ARGV[1] (the {shop} hash tag: one slot, so one call on a cluster).
-- ARGV: prefix, ref_ms (the time the activity's weights are scaled to), half-life ms,
-- top_k, watchers cap, watch ms, renormalise-at (half-lives), then the activity as one
-- JSON array of six sections (one argument: packing thousands of small arguments costs
-- the client more than the script's work):
--   popularity [product, weight]; per category [category, product, weight];
--   baskets [[products], weight]: every two of the products pair with the weight;
--   stars [product, [others], weight]: the product pairs with each of the others;
--   watchers [product, user, ms, 1 watch / 0 bought]; hours: 24 weights
local p = ARGV[1]
local ref, half_life = tonumber(ARGV[2]), tonumber(ARGV[3])
local top_k, cap, watch_ms = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local renormalise_at = tonumber(ARGV[7])
local meta, hours = p .. 'meta', p .. 'hours'

local function rescale(key, factor)
  local entries = redis.call('ZRANGE', key, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    redis.call('ZADD', key, tonumber(entries[i + 1]) * factor, entries[i])
  end
end

-- the scale of this batch's weights against the epoch, moving the epoch if needed
local epoch = tonumber(redis.call('HGET', meta, 'epoch') or '')
if not epoch then
  epoch = ref
  redis.call('HSET', meta, 'epoch', string.format('%.0f', ref))
end
local half_lives = (ref - epoch) / half_life
if half_lives > renormalise_at then
  local shift = math.floor(half_lives)
  local factor = 2 ^ (-shift)
  local literal = p:gsub('[%*%?%[%]\\]', '\\%0')  -- the prefix as a SCAN pattern
  for _, pattern in ipairs({'popular', 'popular:*', 'also:*'}) do
    local cursor = '0'
    repeat
      local found = redis.call('SCAN', cursor, 'MATCH', literal .. pattern, 'COUNT', 1000, 'TYPE', 'zset')
      cursor = found[1]
      for _, key in ipairs(found[2]) do rescale(key, factor) end
    until cursor == '0'
  end
  local stored = redis.call('HGETALL', hours)
  for i = 1, #stored, 2 do
    redis.call('HSET', hours, stored[i], tostring(tonumber(stored[i + 1]) * factor))
  end
  epoch = epoch + shift * half_life
  redis.call('HSET', meta, 'epoch', string.format('%.0f', epoch))
  half_lives = half_lives - shift
end
local scale = 2 ^ half_lives

-- a key grows only when a member is new (its score is then the increment alone): only
-- those keys may need trimming back to top_k
local grown = {}
local function add(key, member, weight)
  local increment = tonumber(weight) * scale
  local score = tonumber(redis.call('ZINCRBY', key, increment, member))
  if score <= increment * (1 + 1e-9) then grown[key] = true end
end

local popular, by_category, baskets, stars, watch, weights = unpack(cjson.decode(ARGV[8]))
for _, e in ipairs(popular) do add(p .. 'popular', e[1], e[2]) end
for _, e in ipairs(by_category) do
  add(p .. 'popular:' .. e[1], e[2], e[3])
  redis.call('SADD', p .. 'categories', e[1])
end
local function pair(a, b, weight)
  add(p .. 'also:' .. a, b, weight)
  add(p .. 'also:' .. b, a, weight)
end
for _, e in ipairs(baskets) do
  local group, weight = e[1], e[2]
  for i = 1, #group do
    for j = i + 1, #group do pair(group[i], group[j], weight) end
  end
end
for _, e in ipairs(stars) do
  for _, other in ipairs(e[2]) do pair(e[1], other, e[3]) end
end
for key in pairs(grown) do redis.call('ZREMRANGEBYRANK', key, 0, -(top_k + 1)) end

local newest = {}
for _, e in ipairs(watch) do
  local key, user, at = p .. 'watch:' .. e[1], e[2], e[3]
  if e[4] == 1 then
    redis.call('ZADD', key, 'GT', at, user)
  else
    redis.call('ZREM', key, user)
  end
  if not newest[key] or newest[key] < at then newest[key] = at end
end
for key, at in pairs(newest) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. string.format('%.0f', at - watch_ms))
  redis.call('ZREMRANGEBYRANK', key, 0, -(cap + 1))
  redis.call('PEXPIRE', key, watch_ms)
end

for h = 0, 23 do
  local weight = weights[h + 1]
  if weight ~= 0 then redis.call('HINCRBYFLOAT', hours, tostring(h), weight * scale) end
end
return 1
