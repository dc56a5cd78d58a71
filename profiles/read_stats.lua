-- Read what a batch's lookups need (see profiles/aggregates.py), in one call.
-- ARGV: key prefix (the {shop} hash tag), top_k, 1 = also the shop-wide rankings and
-- hours / 0 = not, then the product ids named.
-- Returns {epoch, rows, popular, categories, hours, products}: rows = per product id
-- asked, its also-bought row (member, score, ...); popular = (member, score, ...) or
-- false; categories = (name, row, ...) or false; hours = (hour, weight, ...) or false;
-- products = (product id, JSON, ...) for the ids asked and every product ranked.
local p, top_k, shared = ARGV[1], tonumber(ARGV[2]), ARGV[3] == '1'
local wanted, order = {}, {}
local function want(pid)
  if not wanted[pid] then
    wanted[pid] = true
    order[#order + 1] = pid
  end
end
local function row(key)
  local entries = redis.call('ZRANGE', key, 0, top_k - 1, 'REV', 'WITHSCORES')
  for i = 1, #entries, 2 do want(entries[i]) end
  return entries
end

local rows = {}
for i = 4, #ARGV do
  want(ARGV[i])
  rows[#rows + 1] = row(p .. 'also:' .. ARGV[i])
end
local popular, categories, hours = false, false, false
if shared then
  popular = row(p .. 'popular')
  categories = {}
  for _, name in ipairs(redis.call('SMEMBERS', p .. 'categories')) do
    categories[#categories + 1] = name
    categories[#categories + 1] = row(p .. 'popular:' .. name)
  end
  hours = redis.call('HGETALL', p .. 'hours')
end
local products = {}
for first = 1, #order, 1000 do  -- unpack() takes a few thousand values at most
  local last = math.min(first + 999, #order)
  local docs = redis.call('HMGET', p .. 'catalog', unpack(order, first, last))
  for i = first, last do
    if docs[i - first + 1] then
      products[#products + 1] = order[i]
      products[#products + 1] = docs[i - first + 1]
    end
  end
end
local epoch = redis.call('HGET', p .. 'meta', 'epoch') or false
return {epoch, rows, popular, categories, hours, products}
