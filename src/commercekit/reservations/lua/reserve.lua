-- Reserve a cart, all lines or none.
--
-- KEYS[1]  the due index (BASE .. "due")
-- KEYS[2]  the idempotency key (BASE .. "idem:..."), or KEYS[1] when none
-- ARGV     base, id, owner, ttl_ms, idem_ttl_ms, fingerprint, has_idem ("1"/"0"),
--          idem (the caller's key, for the record), role, parent, grace_ms,
--          cart JSON, parts JSON, allocation JSON (or "": every unit from the
--          default location), the kits' generation the cart was expanded with,
--          the cart as asked JSON when it is not the units held (a cart with kits:
--          a single record's lines; every record of it keeps its units as `alloc`),
--          else "", then sku, qty pairs: the units to hold
--          (SKUs unique, quantities positive: the Python side checked).
--          allocation {locs = {{location, safety stock}, ...} in priority order,
--            most = true to take from the location with the most units first,
--            split = "lines" (a line may come from several locations), "none"
--            (each line from one location) or "shipment" (every line of this
--            call from one location)}.
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
--          or {err = "KITS_CHANGED", gen}: a kit changed since the caller read them
--          or {err = "PURCHASE_LIMIT", over = {{sku, limit, used, wanted}, ...}}: the owner
--             would hold or buy more of these SKUs within their windows than allowed

local base, id, owner = ARGV[1], ARGV[2], ARGV[3]
local ttl, idem_ttl = tonumber(ARGV[4]), tonumber(ARGV[5])
local fp, has_idem, idem = ARGV[6], ARGV[7] == '1', ARGV[8]
local role, parent, grace = ARGV[9], ARGV[10], tonumber(ARGV[11])
local cart, parts, spec = ARGV[12], ARGV[13], ARGV[14]
local kitgen, shown = tonumber(ARGV[15]), ARGV[16]
local first = 17
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
local gen = tonumber(redis.call('GET', base .. 'kitgen') or '0')
if gen > kitgen then
  return cjson.encode({err = 'KITS_CHANGED', gen = gen})
end

local lines, short = {}, {}
local limits = {}  -- per line {limit, window ms}, when read with its stock
local alloc = nil
if spec == '' then
  local before, owed = {}, false
  for i = first, #ARGV, 2 do
    local sku, qty = ARGV[i], tonumber(ARGV[i + 1])
    local v = redis.call('HMGET', stock_key(base, sku), 'available', 'backorder', 'limit',
      'limit_ms')
    local available = tonumber(v[1] or '0')
    limits[#lines + 1] = {tonumber(v[3] or '0'), tonumber(v[4] or '0')}
    local sellable = sellable_of(available, tonumber(v[2] or '0'), 0)
    if sellable < qty then
      short[#short + 1] = {sku, qty, sellable}
    end
    lines[#lines + 1] = {sku, qty}
    before[#lines] = available
    owed = owed or qty > available
  end
  if shown ~= '' or owed then  -- the record says where its units are (and which are owed)
    alloc = {}
    for i, line in ipairs(lines) do
      alloc[i] = entry(line[1], DEFAULT_LOCATION, line[2], before[i])
    end
  end
else
  for i = first, #ARGV, 2 do
    lines[#lines + 1] = {ARGV[i], tonumber(ARGV[i + 1])}
  end
  alloc, short = allocate(base, lines, cjson.decode(spec))
end
-- Purchase limits: the owner's units of each limited SKU within its window, this cart's too.
local now = now_ms()
local over, counted = {}, {}
for i, line in ipairs(lines) do
  local v = limits[i]
  if not v then
    local raw = redis.call('HMGET', stock_key(base, line[1]), 'limit', 'limit_ms')
    v = {tonumber(raw[1] or '0'), tonumber(raw[2] or '0')}
  end
  local limit, window = v[1], v[2]
  if limit > 0 then
    local key = usage_key(base, line[1], owner)
    local used = used_since(key, now - window)
    if used + line[2] > limit then
      over[#over + 1] = {line[1], limit, used, line[2]}
    end
    counted[#counted + 1] = {key, line[2], window}
  end
end
if #over > 0 then
  return cjson.encode({err = 'PURCHASE_LIMIT', over = over})
end
if #short > 0 then
  return cjson.encode({err = 'OUT_OF_STOCK', short = short})
end
for _, c in ipairs(counted) do
  redis.call('HSET', c[1], id, c[2] .. ':' .. now)
  redis.call('PEXPIRE', c[1], c[3])
end

if alloc then
  for _, a in ipairs(alloc) do
    move(base, a[1], a[2], a[3], 'available', 'held')
  end
else
  for _, line in ipairs(lines) do
    local key = stock_key(base, line[1])
    redis.call('HINCRBY', key, 'available', -line[2])
    redis.call('HINCRBY', key, 'held', line[2])
  end
end

if shown ~= '' and role == 'single' then
  lines = cjson.decode(shown)
end
local f = {
  id = id, owner = owner, lines = lines, created = now, expires = now + ttl, idem = idem, fp = fp,
  alloc = alloc,
}
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
