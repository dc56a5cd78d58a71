-- Schedule (insert or replace) and cancel timers of one partition. Follows timer_buckets.lua.
-- ARGV[1] the number n of schedules; then n triples (id, due ms, stored timer); then ids to
-- cancel
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local at = 2 + 3 * i
  drop_own_entry(ARGV[at])
  put_timer(ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2])
end
for i = 2 + 3 * n, #ARGV do
  drop_own_entry(ARGV[i])
  remove_timer(ARGV[i])
end
save_users()
return n
