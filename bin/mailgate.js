#!/usr/bin/env node
// Entry point of the `mailgate` command: the CLI is TypeScript run by Node 24's type stripping.
import '../src/cli/main.ts';
