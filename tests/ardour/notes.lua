ardour {
	["type"]    = "dsp",
	name        = "MRT Test Note Count",
	category    = "Utility",
	license     = "MIT",
	author      = "MRT Live tests",
	description = [[Test helper (tests/ardour): passes MIDI through and counts the note-ons it
sees in shared memory (int 0), so the session script can tell that the clip's notes reach the
instrument after it.]]
}

function dsp_ioconfig ()
	return { { midi_in = 1, midi_out = 1, audio_in = 0, audio_out = 0 } }
end

function dsp_init (rate)
	self:shmem ():allocate (1)
	self:shmem ():atomic_set_int (0, 0)
end

function dsp_configure (ins, outs)
	n_out = outs
end

function dsp_runmap (bufs, in_map, out_map, n_samples, offset)
	ARDOUR.DSP.process_map (bufs, n_out, in_map, out_map, n_samples, offset)
	local ib = in_map:get (ARDOUR.DataType ("midi"), 0)
	if ib == ARDOUR.ChanMapping.Invalid then return end
	local count = 0
	for _, e in pairs (bufs:get_midi (ib):table ()) do
		local d = e:buffer ():array ()
		if e:size () == 3 and (d[1] & 0xf0) == 0x90 and d[3] > 0 then
			count = count + 1
		end
	end
	if count > 0 then
		self:shmem ():atomic_set_int (0, self:shmem ():atomic_get_int (0) + count)
	end
end
