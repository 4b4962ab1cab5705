#!/usr/bin/env -S node --max-semi-space-size=2
// --max-semi-space-size=2: V8's young generation may otherwise grow to 2 x 16 MiB during startup (schema
// compilation) and keep it; capped at 2 MiB the idle daemon's RSS drops from ~114 to ~87 MiB. RSS matters twice
// here: it is the daemon's memory footprint (issue 6, B5), and every spawn forks the daemon, whose cost on this
// kind of VM grows with the pages mapped. The scavenges a smaller young generation costs are small next to that.
import '../dist/src/main.js';
