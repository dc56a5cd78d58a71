-- How many timers one partition holds. Follows timer_buckets.lua.
-- The sorted set has an entry per user and one per timer stored before under its own id.
local counts = redis.call('HMGET', DATA, '#timers', '#users')
return redis.call('ZCARD', DUE) - tonumber(counts[2] or '0') + tonumber(counts[1] or '0')
