-- Schedule (insert or replace) and cancel timers of one partition. Follows timer_buckets.lua.
-- ARGV[1] the number n of schedules; then n triples (id, due ms, stored timer); then ids to
-- cancel
local n = tonumber(ARGV[1])
for i = 0, n - 1 do
  local at = 2 + 3 * i
  local tid, due, stored = ARGV[at], tonumber(ARGV[at + 1]), ARGV[at + 2]
  drop_own_entry(tid)
  local name = user_of(tid)
  local timers = timers_of(name)
  local found = index_of(timers, tid)
  timers[found or #timers + 1] = {tid, due, stored}
  changed_user(name)
end
for i = 2 + 3 * n, #ARGV do
  local tid = ARGV[i]
  drop_own_entry(tid)
  local name = user_of(tid)
  local timers = timers_of(name)
  local found = index_of(timers, tid)
  if found then
    table.remove(timers, found)
    changed_user(name)
  end
end
save_users()
return n
