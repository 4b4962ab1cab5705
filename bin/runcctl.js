#!/usr/bin/env node
import '../dist/src/cli/runcctl/cli.js';
