ardour {
	["type"]    = "dsp",
	name        = "MRT Test Pace",
	category    = "Utility",
	license     = "MIT",
	author      = "MRT Live tests",
	description = [[Test helper (tests/ardour): passes audio through and sleeps in the process
callback so that processing, freewheeling exports included, runs no faster than Speed times real
time. Speed 0 turns the pacing off.]]
}

-- Why: Ardour tells a VST3 plugin about offline rendering only in each process call
-- (ProcessData.processMode = kOffline while freewheeling), not in setupProcessing, which it calls
-- before the export starts (kRealtime). MRT Live reads the mode from setupProcessing, so in an
-- Ardour export it plays as it would live: what its worker has ready, silence meanwhile. Pacing
-- the export near real time lets the worker keep up (engine/NOTES.md, "Ardour").

function dsp_ioconfig ()
	return { { audio_in = -1, audio_out = -1 } }
end

function dsp_params ()
	return { { ["type"] = "input", name = "Speed", min = 0, max = 100, default = 1 } }
end

local sr = 48000
local done = 0 -- samples processed since t0
local t0 = nil -- µs (monotonic)

function dsp_init (rate)
	sr = rate
end

function dsp_configure (ins, outs)
	n_out = outs
end

function dsp_runmap (bufs, in_map, out_map, n_samples, offset)
	ARDOUR.DSP.process_map (bufs, n_out, in_map, out_map, n_samples, offset)
	local speed = CtrlPorts:array ()[1]
	local now = ARDOUR.LuaAPI.monotonic_time ()
	if speed <= 0 or not t0 then
		t0, done = now, 0
		return
	end
	done = done + n_samples
	local due = t0 + done / sr * 1e6 / speed
	if due > now then
		ARDOUR.LuaAPI.usleep (math.floor (due - now))
	else
		-- Behind (slow cycles, or pacing just turned on): no credit for lost time.
		t0, done = now, 0
	end
end
