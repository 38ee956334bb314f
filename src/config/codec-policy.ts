/**
 * Which codec the bridge offers WhatsApp on an agent's call (MEDIA_CODEC_POLICY). `transcode` (default):
 * opus only, transcoded to the PBX's codecs, as WhatsApp offered nothing else until 2026. `prefer-g711`:
 * the PBX's G.711 codecs as they are, ahead of a transcoded opus, so a WhatsApp that answers PCMU or PCMA
 * (Meta added G.711 to its calling SDP in 2026) costs rtpengine no transcoding at all; opus stays there
 * for one that does not. A WhatsApp user's own offer needs no policy: when it carries G.711 the PBX takes,
 * rtpengine 10.5 already passes it through with the flags of waOfferToPbx (opus masked, the PBX's codecs
 * "transcoded" only where missing), which the load test measures (docs/load.md). Pass-through takes
 * rtpengine's opus encoder (most of its CPU per call) out of the call, at the cost of opus's resilience
 * on the internet leg (no in-band FEC, no bandwidth adaptation, 64 kbit/s).
 *
 * It lives in config/ (which imports nothing of the bridge's) so that the setting can name its values;
 * media/profiles.ts, which acts on it, imports it from here.
 */
export const CODEC_POLICIES = ['transcode', 'prefer-g711'] as const;
export type CodecPolicy = (typeof CODEC_POLICIES)[number];
