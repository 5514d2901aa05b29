"""Media decoding: the audio track, the sampled video frames, and the child process that bounds both in time."""
