-- wrk script of the serving benchmark (scripts/bench/wrk.py runs it).
--
--   wrk -t1 -cN -dDs -s bench.lua URL -- BODIES_FILE PATH [RATE]
--
-- BODIES_FILE holds one JSON request body per line; requests POST them to PATH in turn, so
-- consecutive requests carry different rows. RATE > 0 paces the sends: send slots are spaced
-- 1/RATE s apart for the whole thread and each connection takes the next free slot (LuaJIT's FFI
-- reads the monotonic clock). With enough connections that is an open-loop, fixed-rate load;
-- a server slower than RATE leaves slots behind and the achieved rate shows it.
-- done() prints one line "BENCH_JSON {...}" with counts and latency percentiles in us.

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local clock = ffi.new("bench_timespec")

local requests = {}
local next_request = 1
local slot_ms = 0
local next_slot_ms = nil

local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, clock)
  return tonumber(clock.tv_sec) * 1000 + tonumber(clock.tv_nsec) / 1e6
end

local function paced_delay()
  local now = now_ms()
  if next_slot_ms == nil then
    next_slot_ms = now
  end
  local wait_ms = next_slot_ms - now
  next_slot_ms = next_slot_ms + slot_ms
  if wait_ms < 0 then
    return 0
  end
  return wait_ms
end

function init(args)
  local bodies = assert(io.open(args[1], "r"), "cannot open bodies file " .. tostring(args[1]))
  local headers = { ["Content-Type"] = "application/json" }
  for line in bodies:lines() do
    if #line > 0 then
      requests[#requests + 1] = wrk.format("POST", args[2], headers, line)
    end
  end
  bodies:close()
  assert(#requests > 0, "no request bodies in " .. args[1])
  local rate = tonumber(args[3] or "0")
  if rate > 0 then
    slot_ms = 1000 / rate
    -- wrk looks for a global delay() after the first thread's init(): define it only when pacing.
    delay = paced_delay
  end
end

function request()
  local next = requests[next_request]
  next_request = next_request % #requests + 1
  return next
end

function done(summary, latency, _)
  local errors = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "status": %d, "timeout": %d}, "latency_us": {"p50": %d, "p90": %d, ' ..
    '"p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, errors.connect, errors.read, errors.write,
    errors.status, errors.timeout, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean))
end
