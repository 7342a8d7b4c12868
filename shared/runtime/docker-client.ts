// The Docker engine's client, loaded on first use. dockerode brings ~0.2 s of modules at start
// (docker-modem, its gRPC session support): a process that never talks to an engine (the process
// driver, a cleanup with no image to remove, each CLI-spawned helper in the tests) skips them.
import { createRequire } from 'node:module';
import type Docker from 'dockerode';

const require = createRequire(import.meta.url);

/** A client of the engine DOCKER_HOST (or the default socket) names, as `new Docker(opts)`. */
export function newDockerClient(opts?: Docker.DockerOptions): Docker {
  const Dockerode = require('dockerode') as typeof Docker;
  return new Dockerode(opts);
}
