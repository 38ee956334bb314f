import assert from 'node:assert/strict';

/**
 * A file WhatsApp made of a call, as the calls API gives it: listed with the call (GET /api/calls/:id,
 * with its URL) and served with these bytes and a content type matching `contentType`.
 */
export async function assertMediaServed(
  admin: (path: string) => Promise<Response>,
  o: { callId: string; mediaId: string; rowId: number; kind: string; body: Buffer; contentType: RegExp },
): Promise<void> {
  const detail = await admin(`/api/calls/${o.callId}`);
  assert.equal(detail.status, 200);
  const { media } = await detail.json() as { media: Array<{ id: number; kind: string; media_id: string; url: string | null }> };
  const listed = media.find((x) => x.media_id === o.mediaId);
  assert.ok(listed, JSON.stringify(media));
  assert.equal(listed.kind, o.kind);
  assert.equal(listed.url, `/api/calls/${o.callId}/media/${o.rowId}`);
  const file = await admin(listed.url!);
  assert.equal(file.status, 200);
  assert.deepEqual(Buffer.from(await file.arrayBuffer()), o.body);
  assert.match(file.headers.get('content-type') ?? '', o.contentType);
}
