import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { callQuality, legQuality } from '../../src/media/quality';
import { mixdown } from '../../src/recording/mixdown';
import { parseRtp } from '../../src/media/rtp-packets';
import { udpPackets } from '../../src/recording/pcap';
import { parseRecordingMeta } from '../../src/recording/recording-meta';
import { syntheticCall, syntheticSdps } from '../harness/pcap-writer';
import { toneShare } from '../harness/tone';

describe('recording: pcap to stereo WAV', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wasb-mix-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads rtpengine metadata and SDPs: port, side and payload types of each leg', () => {
    const meta = parseRecordingMeta(`/spool/pcaps/x-1.pcap\n\n\n${syntheticSdps(30000, 30010).join('\n')}`);
    assert.equal(meta.pcapPath, '/spool/pcaps/x-1.pcap');
    const wa = meta.legs.find((l) => l.port === 30000)!;
    const pbx = meta.legs.find((l) => l.port === 30010)!;
    assert.equal(wa.side, 'whatsapp');
    assert.equal(pbx.side, 'pbx');
    assert.deepEqual(wa.codecs.get(111), { name: 'OPUS', clock: 48000, channels: 2 });
    assert.deepEqual(pbx.codecs.get(0), { name: 'PCMU', clock: 8000, channels: 1 });
  });

  it('parses pcap records and RTP headers, skipping RTCP', () => {
    const pcap = syntheticCall(1, { waPort: 30000, pbxPort: 30010, userTone: 440, agentTone: 1000 });
    const packets = [...udpPackets(pcap)];
    assert.equal(packets.length, 101);
    const rtps = packets.map((p) => parseRtp(p.payload));
    assert.equal(rtps.filter((r) => r === null).length, 1, 'the RR is not audio');
    assert.equal(rtps.filter((r) => r?.payloadType === 111).length, 50);
    assert.throws(() => [...udpPackets(Buffer.from('not a pcap file at all, really'))], /not a pcap file/);
  });

  it('mixes the WhatsApp user into the left channel and the PBX into the right, in time', () => {
    const pcap = syntheticCall(4, { waPort: 30000, pbxPort: 30010, userTone: 440, agentTone: 1000 });
    const legs = parseRecordingMeta(syntheticSdps(30000, 30010).join('\n')).legs;
    const out = path.join(dir, 'call.wav');
    const r = mixdown(pcap, legs, out);
    const wav = fs.readFileSync(out);
    assert.equal(r.bytes, wav.length);
    assert.ok(Math.abs(r.seconds - 4) < 0.05, `${r.seconds} s`);
    assert.equal(r.packets, 400);
    assert.equal(wav.toString('ascii', 0, 4), 'RIFF');
    assert.equal(wav.readUInt16LE(22), 2);
    assert.equal(wav.readUInt32LE(40), wav.length - 44);
    const frames = (wav.length - 44) / 4;
    const ch = (c: number) => Int16Array.from({ length: 8000 }, (_, i) => wav.readInt16LE(44 + (frames / 2 + i - 4000) * 4 + c * 2));
    assert.ok(toneShare(ch(0), 440, 8000).share > 0.8, 'left: the user');
    assert.ok(toneShare(ch(1), 1000, 8000).share > 0.9, 'right: the agent');
  });

  it('refuses a codec it cannot decode, naming it', () => {
    const pcap = syntheticCall(1, { waPort: 30000, pbxPort: 30010, userTone: 440, agentTone: 1000 });
    const legs = parseRecordingMeta(syntheticSdps(30000, 30010)[1]!.replace('a=rtpmap:0 PCMU/8000', 'a=rtpmap:0 G729/8000')).legs;
    assert.throws(() => mixdown(pcap, legs, path.join(dir, 'x.wav')), /cannot decode G729/);
  });
});

describe('call quality from rtpengine query', () => {
  // Shaped like rtpengine 10.5's answer: reports are kept under the reporter's SSRC.
  const res = {
    SSRC: {
      111: { 'cumulative loss': 3, 'average MOS': { MOS: 41, 'round-trip time leg': 12000, jitter: 9, 'packet loss': 2, samples: 4 }, 'lowest MOS': { MOS: 37 } },
      222: { 'cumulative loss': 0, 'average MOS': { MOS: 44, 'round-trip time leg': 800, jitter: 1, 'packet loss': 0, samples: 2 }, 'lowest MOS': { MOS: 44 } },
      999: { 'average MOS': { MOS: 20, samples: 1 } },
    },
    tags: {
      wa: { medias: [{ streams: [{ SSRC: 111 }, { SSRC: 111 }] }] },
      pbx: { medias: [{ streams: [{ SSRC: 222 }, {}] }] },
    },
  };

  it('gives each leg its own party\'s figures and the call its worst leg', () => {
    const legs = legQuality(res, { wa: 'whatsapp', pbx: 'pbx' });
    assert.deepEqual(legs.whatsapp, { mos: 4.1, mosMin: 3.7, jitterMs: 9, packetLossPct: 2, packetsLost: 3, rttMs: 12, reports: 4 });
    assert.equal(legs.pbx!.mos, 4.4);
    assert.equal(Object.keys(legs).length, 2, 'an SSRC of no leg is ignored');
    assert.deepEqual(callQuality(legs), { mos: 4.1, packetLossPct: 2, jitterMs: 9, rttMs: 12.8 });
    assert.equal(callQuality({}), null);
  });
});
