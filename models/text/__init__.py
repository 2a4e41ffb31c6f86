"""The text front end shared by every voice family.

- `guard`: any text → bounded, speakable pieces (used by every family today);
- `budget`: phonemes per model call, audio per character;
- `normalize_en` (with `rewrite`, `numbers_en`, `lexicon_en`): English IVR/kiosk text → the words
  a listener should hear (not wired into the families yet);
- `ssml` (with `segments`): safe SSML → sentences of text, break and mark segments (not wired
  into the protocol yet).
"""
