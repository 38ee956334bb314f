import fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { mixdown } from './mixdown';
import { LegMedia } from './recording-meta';

/** Runs one mixdown off the bridge's event loop (opus decoding is CPU-bound). */
const job = workerData as { pcapPath: string; legs: LegMedia[]; outFile: string };
parentPort!.postMessage(mixdown(fs.readFileSync(job.pcapPath), job.legs, job.outFile));
