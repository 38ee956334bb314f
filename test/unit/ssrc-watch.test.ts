import assert from 'node:assert/strict';
import { NgResponse } from 'rtpengine-client';
import { incomingSsrc, SsrcWatch } from '../../src/media/ssrc-watch';

describe('SsrcWatch (a PBX stream returning on an SSRC it had left)', () => {
  it('reports A -> B -> A once, at the return; not the first change A -> B, nor repeats of one SSRC', () => {
    const w = new SsrcWatch();
    assert.equal(w.observe('pbx-1', null), null, 'nothing received yet');
    assert.equal(w.observe('pbx-1', 111), null);
    assert.equal(w.observe('pbx-1', 111), null);
    assert.equal(w.observe('pbx-1', 222), null, 'a first change is heard fine');
    assert.equal(w.observe('pbx-1', null), null, 'a poll without a reading changes nothing');
    assert.deepEqual(w.observe('pbx-1', 111), { returned: 111, left: 222 });
    assert.equal(w.observe('pbx-1', 111), null, 'reported once');
    assert.equal(w.observe('pbx-1', 333), null, 'a new SSRC');
    assert.deepEqual(w.observe('pbx-1', 222), { returned: 222, left: 333 });
  });

  it('starts again with a fresh PBX-leg tag (the cure gives the PBX\'s audio a new stream)', () => {
    const w = new SsrcWatch();
    w.observe('pbx-1', 111);
    w.observe('pbx-1', 222);
    assert.equal(w.observe('pbx-1-1', 111), null, 'first SSRC on the new tag');
    assert.equal(w.observe('pbx-1-1', 222), null, 'a first change on the new tag');
    assert.deepEqual(w.observe('pbx-1-1', 111), { returned: 111, left: 222 });
  });

  it('reads the tag\'s current incoming SSRC from a query answer (the RTP stream\'s, not another tag\'s)', () => {
    const res = {
      result: 'ok',
      tags: {
        'wa-1': { medias: [{ streams: [{ SSRC: 999 }] }] },
        'pbx-1': { medias: [{ streams: [{ stats: { packets: 3 } }, { SSRC: 0 }] }] },
        'pbx-1-1': { medias: [{ streams: [{ SSRC: 4242, stats: { packets: 9 } }, { SSRC: 7 }] }] },
      },
    } as unknown as NgResponse;
    assert.equal(incomingSsrc(res, 'pbx-1-1'), 4242);
    assert.equal(incomingSsrc(res, 'pbx-1'), null);
    assert.equal(incomingSsrc(res, 'nope'), null);
  });
});
