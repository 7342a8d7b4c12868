#!/usr/bin/env node
// The `containerpub` executable (package.json "bin"): registers tsx so the TypeScript sources run
// as they are, then hands over to main.ts.
import { register } from 'tsx/esm/api';

register();
await import('./main.ts');
