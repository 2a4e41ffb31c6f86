"""The text front end shared by every voice family (docs/text.md).

- `frontend`: the entry, what each family is handed (normalized words, SSML segments' words, the
  phoneme lexicon) and the phrase-cache stamp of its options;
- `ssml` (with `segments`): safe SSML → sentences of text, break and mark segments;
- `sentences`: where sentences end (abbreviation-aware), for SSML and streamed plain text;
- `normalize_en` (with `rewrite`, `numbers_en`, `lexicon_en`): English IVR/kiosk text → the words
  a listener should hear; `say_as_en`: SSML `<say-as>` hints;
- `ipa`: written IPA (SSML `<phoneme>`), read for the families' own phoneme sets;
- `guard`: any text → bounded, speakable pieces (every family runs it);
- `budget`: phonemes per model call, audio per character.
"""
