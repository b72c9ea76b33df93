#!/usr/bin/env node
// servers.mjs - starts one peer server on 127.0.0.1, a free port, in this
// process: node bench/peers/servers.mjs PEER. Prints "peer port=N" on stderr
// once it listens; SIGTERM ends it. PEER is a module here that exports
// startServer() -> Promise<port> (see driver.mjs).
const name = process.argv[2];
const peer = await import(`./${name}.mjs`);
const port = await peer.startServer();
process.stderr.write(`peer port=${port}\n`);
process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
