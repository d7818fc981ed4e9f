-- Expire up to `limit` pending reservations whose deadline has passed.
-- Atomic per call, so any number of sweepers may run at once: a hold is
-- expired (and its stock returned) by exactly one of them. A record a newer
-- release wrote is left to that release's sweepers.
--
-- KEYS[1]  the due index (BASE .. "due")
-- ARGV     base, limit, retention_ms
-- Returns  JSON {expired = records expired by this call,
--                parts = due parts (see reserve.lua), left for the caller to
--                settle after their parent or reschedule}

local base, limit, retention = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if not ready(base) then
  return redis.error_reply(NOT_READY)
end
local now = now_ms()
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, limit)
local expired, parts = {}, {}
for _, id in ipairs(ids) do
  local rec, newer = load_record(res_key(base, id))
  if newer then
    -- left in the index for a newer release's sweepers
  elseif rec and rec.status == 'PENDING' and rec.parent then
    parts[#parts + 1] = rec
  elseif rec and rec.status == 'PENDING' then
    expired[#expired + 1] = settle(base, KEYS[1], rec, 'EXPIRED', now, retention)
  else
    redis.call('ZREM', KEYS[1], id)  -- a stale entry: nothing to return
  end
end
-- cjson writes an empty table as {}: say "no records" as a count instead
return cjson.encode({expired = expired, parts = parts, n = #expired, p = #parts})
