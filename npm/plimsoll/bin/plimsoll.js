#!/usr/bin/env node
// The `plimsoll` command of the npm package: finds the binary of this platform's package
// (@plimsoll/linux-x64 or @plimsoll/linux-arm64, installed through optionalDependencies, as
// esbuild and Biome do) and runs it with the arguments, passing standard streams, the exit code
// and signals through. No dependencies, no install script, no download.
'use strict';

const { spawn } = require('child_process');
const { constants } = require('os');

const PACKAGES = {
  'linux-x64': '@plimsoll/linux-x64',
  'linux-arm64': '@plimsoll/linux-arm64',
};

function fail(message) {
  process.stderr.write(`plimsoll: ${message}\n`);
  // 2: the contract's "bad usage or bad input"; 1 would read as "leak found" to a CI gate.
  process.exit(2);
}

function binary() {
  const platform = `${process.platform}-${process.arch}`;
  const name = PACKAGES[platform];
  if (!name) {
    fail(
      `no plimsoll binary for ${platform}: the npm package ships ${Object.keys(PACKAGES).join(' and ')} ` +
        '(plimsoll reads Linux /proc and cgroups); elsewhere, run it in a Linux container',
    );
  }
  try {
    return require.resolve(`${name}/bin/plimsoll`);
  } catch (error) {
    fail(
      `the package ${name} for ${platform} is not installed (it comes with plimsoll through ` +
        'optionalDependencies: reinstall without --no-optional or --omit=optional, ' +
        `or run npm i -D plimsoll ${name})`,
    );
  }
}

const path = binary();
const child = spawn(path, process.argv.slice(2), { stdio: 'inherit' });

// A signal sent to this launcher (a CI timeout, `kill`, a process manager) goes on to plimsoll,
// which stops its target gracefully; Ctrl-C reaches both anyway, and plimsoll takes the first.
const FORWARDED = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const forward = (signal) => child.kill(signal);
for (const signal of FORWARDED) process.on(signal, forward);

child.on('error', (error) => fail(`cannot start ${path}: ${error.message}`));
child.on('exit', (code, signal) => {
  for (const name of FORWARDED) process.removeListener(name, forward);
  if (signal) {
    // Die of the same signal, so the caller sees what plimsoll saw; where Node ignores that
    // signal (SIGPIPE), exit as a shell reports it.
    process.exitCode = 128 + (constants.signals[signal] || 0);
    process.kill(process.pid, signal);
    return;
  }
  process.exit(code);
});
