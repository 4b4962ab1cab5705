#!/usr/bin/env -S MALLOC_ARENA_MAX=2 node --max-semi-space-size=2 --optimize-for-size
// --max-semi-space-size=2: V8's young generation may otherwise grow to 2 x 16 MiB during startup (schema
// compilation) and keep it; capped at 2 MiB the idle daemon's RSS drops from ~114 to ~87 MiB. RSS matters twice
// here: it is the daemon's memory footprint (issue 6, B5), and every spawn forks the daemon, whose cost on this
// kind of VM grows with the pages mapped. The scavenges a smaller young generation costs are small next to that.
// MALLOC_ARENA_MAX=2: glibc gives each thread that mallocs (libuv's pool, V8's workers) an arena of its own, and
// memory freed in one is not reused by another; two arenas kept ~6 MiB off the RSS of a daemon holding 1000
// containers (105.7 -> 99.5 MiB right after creating them, 102.6 -> 97.0 MiB at rest; same run, same machine).
// --optimize-for-size: V8 grows the heap less eagerly and gives memory back sooner. B5 with 1000 containers:
// 102.2 -> 90.6 MiB (idle 84.9 -> 79.3); B1 in the same interleaved run: 1.01x of the build without it (noise).
import '../dist/src/main.js';
