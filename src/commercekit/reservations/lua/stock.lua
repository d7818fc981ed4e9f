-- Change the stock of one SKU at one location.
--
-- KEYS[1]  the SKU's stock hash (BASE .. "stock:" .. sku)
-- ARGV     op ("set" | "restock" | "adjust"), amount, base, location
--          set:     on-hand units (available + held) become `amount`
--          restock: `amount` (> 0) more units become available
--          adjust:  available changes by `amount` (may be negative)
-- Returns  JSON {available, held, sold}
--          or {err = "BELOW_HELD" | "NEGATIVE", available, held, sold}

local op, amount, loc = ARGV[1], tonumber(ARGV[2]), ARGV[4]
if not ready(ARGV[3]) then
  return redis.error_reply(NOT_READY)
end
local available, held, sold = unpack(stock_of(KEYS[1], loc))

local target
if op == 'set' then
  if amount < held then
    return cjson.encode({err = 'BELOW_HELD', available = available, held = held, sold = sold})
  end
  target = amount - held
elseif op == 'restock' or op == 'adjust' then
  target = available + amount
  if target < 0 then
    return cjson.encode({err = 'NEGATIVE', available = available, held = held, sold = sold})
  end
else
  return redis.error_reply('unknown stock operation ' .. tostring(op))
end

redis.call('HSET', KEYS[1], field('available', loc), target, field('held', loc), held,
  field('sold', loc), sold)
return cjson.encode({available = target, held = held, sold = sold})
