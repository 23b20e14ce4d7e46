-- rotate.lua: each request goes to the next of the targets in the file
-- given after `--`: one a line, a path and then its request headers, all
-- separated by tabs ("/user/u1/notebook/whoami<TAB>Cookie: hubgate_session=..."),
-- so one wrk run spreads over many users' servers. The requests are
-- formatted once in init, so one target costs the same per request as a
-- thousand.
--
-- With BENCH_WRK_DELAY_MS set, each connection waits that many ms after
-- each response before its next request: one server asked at the rate
-- a spread run reached (scale.go), to tell the cost of the rate from the
-- cost of the number of servers. Unset, wrk sends as fast as it can.
local reqs = {}
local i = 0

local pause = tonumber(os.getenv("BENCH_WRK_DELAY_MS") or "")
if pause then
	delay = function()
		return pause
	end
end

init = function(args)
	local f = assert(io.open(args[1], "r"))
	for line in f:lines() do
		local fields = {}
		for field in line:gmatch("[^\t]+") do
			fields[#fields + 1] = field
		end
		if #fields > 0 then
			local headers = {}
			for k = 2, #fields do
				local name, value = fields[k]:match("^([^:]+):%s*(.*)$")
				assert(name, "not a header: " .. fields[k])
				headers[name] = value
			end
			reqs[#reqs + 1] = wrk.format("GET", fields[1], headers)
		end
	end
	f:close()
	assert(#reqs > 0, "no targets in " .. args[1])
	-- Threads start at different places in the list.
	i = math.random(#reqs) - 1
end

request = function()
	i = i % #reqs + 1
	return reqs[i]
end

done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format(
		'BENCHJSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"mean_us":%.1f,' ..
		'"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d}\n',
		summary.requests, summary.duration, summary.bytes,
		latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
		latency.max, latency.mean,
		e.connect, e.read, e.write, e.status, e.timeout))
end
