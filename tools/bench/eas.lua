-- eas.lua - wrk script: replay one real EAS capture over HTTPS keep-alive.
--
-- The request is the capture's bytes (method, target, header order, binary
-- WBXML body), not wrk's own formatting, so every proxy parses exactly what
-- a phone sends. Only the identity differs: each wrk thread is one user (its
-- own User= parameter, Basic credentials and DeviceId), so every connection
-- keeps one user as a phone's does, and consistent hashing on the user
-- spreads the threads over both backends. Run with several threads (-t8).
--
-- Environment:
--   BENCH_CAPTURE  the .http capture (required)
--   BENCH_ROTATE   N > 0: instead, every request takes the next of N users, so
--                  one connection carries many users (not what phones do; it
--                  defeats a gateway that keeps one backend connection per
--                  client connection)
--   BENCH_UA       replace the User-Agent (e.g. a blocked one for the 403 run)
--   BENCH_CLOSE    "1": add "Connection: close" (one request per connection)
--   BENCH_EXPECT   expected status (default 200); others are counted and
--                  reported by done() so a run that measured errors is visible
--   BENCH_REFUSED  "1": a response from a backend (X-Backend header) is also
--                  unexpected: the proxy itself must answer
--   BENCH_DELAY_MS think time per connection between requests (default 0):
--                  a paced load, for latency below saturation
--
-- done() prints one "BENCH key=value ..." line, including how many answers
-- came from each backend (X-Backend), for run.sh.
--
-- Usage: BENCH_CAPTURE=... wrk -t2 -c64 -d10s --latency -s eas.lua https://host:port

local b64chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

-- Plain Lua base64 (wrk's LuaJIT has no bit ops we want to rely on).
local function base64(s)
	local out = {}
	for i = 1, #s, 3 do
		local a, b, c = s:byte(i, i + 2)
		local n = a * 65536 + (b or 0) * 256 + (c or 0)
		local c1 = math.floor(n / 262144) % 64
		local c2 = math.floor(n / 4096) % 64
		local c3 = math.floor(n / 64) % 64
		local c4 = n % 64
		out[#out + 1] = b64chars:sub(c1 + 1, c1 + 1) .. b64chars:sub(c2 + 1, c2 + 1)
			.. (b and b64chars:sub(c3 + 1, c3 + 1) or "=")
			.. (c and b64chars:sub(c4 + 1, c4 + 1) or "=")
	end
	return table.concat(out)
end

local function read_capture(path)
	local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
	local raw = f:read("*a")
	f:close()
	local hend = raw:find("\r\n\r\n", 1, true)
	assert(hend, path .. ": no end of head")
	return raw:sub(1, hend - 1), raw:sub(hend + 4)
end

-- One request for user number i: the capture with its identity replaced.
local function variant(head, body, i)
	local user = string.format("bench%d@dev.fd", i)
	local quser = string.format("bench%d%%40dev.fd", i)
	local lines = {}
	for line in (head .. "\r\n"):gmatch("(.-)\r\n") do
		lines[#lines + 1] = line
	end
	-- Request line: User= and DeviceId= (same length as a 16-char DeviceId).
	-- (function replacements: "%40" must not be read as a capture reference)
	local dev = string.format("DeviceId=Bench%011d", i)
	lines[1] = lines[1]:gsub("User=[^& ]*", function() return "User=" .. quser end, 1)
	lines[1] = lines[1]:gsub("DeviceId=[^& ]*", function() return dev end, 1)
	local out = {lines[1]}
	for k = 2, #lines do
		local l = lines[k]
		local name = l:match("^([^:]+):")
		local lname = name and name:lower() or ""
		if lname == "authorization" then
			l = "Authorization: Basic " .. base64(user .. ":test-password")
		elseif lname == "user-agent" and os.getenv("BENCH_UA") then
			l = "User-Agent: " .. os.getenv("BENCH_UA")
		elseif lname == "content-length" then
			l = "Content-Length: " .. #body
		end
		out[#out + 1] = l
	end
	if os.getenv("BENCH_CLOSE") == "1" then
		out[#out + 1] = "Connection: close"
	end
	return table.concat(out, "\r\n") .. "\r\n\r\n" .. body
end

local reqs = {}
local nreq = 0
local idx = 0
local expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
local refused = os.getenv("BENCH_REFUSED") == "1"
local think = tonumber(os.getenv("BENCH_DELAY_MS") or "0")
local threads = {}

function setup(thread)
	threads[#threads + 1] = thread
	thread:set("tid", #threads)
end

function init(args)
	local head, body = read_capture(os.getenv("BENCH_CAPTURE"))
	local rotate = tonumber(os.getenv("BENCH_ROTATE") or "0")
	if rotate > 0 then
		for i = 1, rotate do
			reqs[i] = variant(head, body, i)
		end
		nreq = rotate
		-- Threads start at different users so the mix is even from the start.
		idx = ((tid or 1) - 1) * 17 % rotate
	else
		reqs[1] = variant(head, body, tid or 1)
		nreq = 1
	end
	unexpected = 0
	backends = {}
end

function request()
	idx = idx % nreq + 1
	return reqs[idx]
end

if think > 0 then
	function delay()
		return think
	end
end

function response(status, headers, body)
	local be = headers["X-Backend"] or headers["x-backend"]
	if status ~= expect or (refused and be) then
		unexpected = unexpected + 1
	end
	if be then
		backends[be] = (backends[be] or 0) + 1
	end
end

function done(summary, latency, requests)
	local bad = 0
	local seen = {}
	for _, t in ipairs(threads) do
		bad = bad + (t:get("unexpected") or 0)
		for name, n in pairs(t:get("backends") or {}) do
			seen[name] = (seen[name] or 0) + n
		end
	end
	local names = {}
	for name, _ in pairs(seen) do
		names[#names + 1] = name
	end
	table.sort(names)
	local bes = {}
	for _, name in ipairs(names) do
		bes[#bes + 1] = name .. ":" .. seen[name]
	end
	-- Machine-readable lines for run.sh (microseconds; wrk's own text is kept too).
	io.write(string.format("BENCH requests=%d duration_us=%d unexpected=%d " ..
		"connect_err=%d read_err=%d write_err=%d status_err=%d timeouts=%d " ..
		"p50_us=%d p90_us=%d p99_us=%d p999_us=%d max_us=%d backends=%s\n",
		summary.requests, summary.duration, bad, summary.errors.connect,
		summary.errors.read, summary.errors.write, summary.errors.status,
		summary.errors.timeout, latency:percentile(50), latency:percentile(90),
		latency:percentile(99), latency:percentile(99.9), latency.max, #bes > 0 and table.concat(bes, ",") or "none"))
end
