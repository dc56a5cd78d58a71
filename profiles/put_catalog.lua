-- Store products in the catalog hash and return the entries they replace.
-- KEYS[1]: the catalog hash; ARGV: product id, product JSON, product id, product JSON, ...
-- Returns, per product, its previous JSON or false (none).
local old = {}
for i = 1, #ARGV, 2 do
  old[#old + 1] = redis.call('HGET', KEYS[1], ARGV[i]) or false
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
end
return old
