-- Reserve a cart, all lines or none.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the idempotency key (BASE .. "idem:..."), or KEYS[1] when none
-- ARGV     base, id, owner, ttl_ms, idem_ttl_ms, fingerprint, has_idem ("1"/"0"),
--          idem (the caller's key, for the record), role, parent, grace_ms,
--          cart JSON, parts JSON, then sku, qty pairs (SKUs unique, quantities
--          positive: the Python side checked).
--          role "single": a cart whose SKUs all live in this shard.
--          role "parent": the home part of a cart spread over shards; `cart`
--            is the whole cart, `parts` the other shards holding the rest.
--          role "part": another shard's lines of such a cart; it follows its
--            parent and is due `grace_ms` after the deadline (only to clean up
--            after a crash between the parts and the parent).
-- Returns  JSON {ok = "CREATED" | "REPLAYED", reservation = record}
--          or {err = "OUT_OF_STOCK", short = {{sku, wanted, available}, ...}}
--          or {err = "IDEMPOTENCY_CONFLICT" | "IDEMPOTENCY_EXPIRED" | "DUPLICATE_ID", id = id}
--          or {err = "RECORD_VERSION", id, v, max}: the replayed record is a newer release's

local base, id, owner = ARGV[1], ARGV[2], ARGV[3]
local ttl, idem_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local fp, has_idem, idem = ARGV[6], ARGV[7] == '1', ARGV[8]
local role, parent, grace = ARGV[9], ARGV[10], tonumber(ARGV[11])
local cart, parts = ARGV[12], ARGV[13]
local first = 14
if not ready(base) then
  return redis.error_reply(NOT_READY)
end

if has_idem then
  local seen = redis.call('GET', KEYS[2])
  if seen then
    local bar = string.find(seen, '|', 1, true)
    local seen_id = string.sub(seen, bar + 1)
    if string.sub(seen, 1, bar - 1) ~= fp then
      return cjson.encode({err = 'IDEMPOTENCY_CONFLICT', id = seen_id})
    end
    local rec, newer = load_record(res_key(base, seen_id))
    if newer then
      return newer_record(seen_id, newer)
    elseif not rec then
      return cjson.encode({err = 'IDEMPOTENCY_EXPIRED', id = seen_id})
    end
    return cjson.encode({ok = 'REPLAYED', reservation = rec})
  end
end

if redis.call('EXISTS', res_key(base, id)) == 1 then
  return cjson.encode({err = 'DUPLICATE_ID', id = id})
end

local lines, short = {}, {}
for i = first, #ARGV, 2 do
  local sku, qty = ARGV[i], tonumber(ARGV[i + 1])
  local available = stock_of(stock_key(base, sku))[1]
  if available < qty then
    short[#short + 1] = {sku, qty, available}
  end
  lines[#lines + 1] = {sku, qty}
end
if #short > 0 then
  return cjson.encode({err = 'OUT_OF_STOCK', short = short})
end

for _, line in ipairs(lines) do
  local key = stock_key(base, line[1])
  redis.call('HINCRBY', key, 'available', -line[2])
  redis.call('HINCRBY', key, 'held', line[2])
end

local now = now_ms()
local f = {id = id, owner = owner, lines = lines, created = now, expires = now + ttl, idem = idem, fp = fp}
local due = f.expires
if role == 'parent' then
  f.cart = cjson.decode(cart)
  f.parts = cjson.decode(parts)
  f.incomplete = true  -- until every part is held: see "complete" in transition.lua
elseif role == 'part' then
  f.parent = parent
  due = due + grace
end
local rec = new_record(f)
save_record(base, rec)
redis.call('ZADD', KEYS[1], due, id)
if has_idem then
  redis.call('SET', KEYS[2], fp .. '|' .. id, 'PX', idem_ttl)
end
return cjson.encode({ok = 'CREATED', reservation = rec})
