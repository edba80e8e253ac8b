"""Getting the real Fitzpatrick 17k: resumable downloads and imports of image folders."""
