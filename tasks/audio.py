"""Speech features in TF ops: WAV -> fixed-length clip -> log-mel or MFCC.

Matches FedScale's Speech Commands pipeline (librosa defaults): 16 kHz mono,
padded or cut to 1 s, STFT with a 2048-point window and hop 512, centred
(reflect-padded by half a window, so 1 s gives 32 frames), 32 mel bands, power
in dB relative to the clip's maximum (`librosa.power_to_db(S, ref=np.max)`,
floored at -80 dB). Everything is TF ops (`tf.audio.decode_wav`,
`tf.signal`), so it runs inside the serializable dataset function.
"""

import tensorflow as tf

SAMPLE_RATE = 16000
CLIP_SECONDS = 1.0
FRAME_LENGTH = 2048
FRAME_STEP = 512
NUM_MELS = 32
NUM_MFCC = 32
TOP_DB = 80.0


def decode_clip(wav_bytes: tf.Tensor, clip_samples: int = int(SAMPLE_RATE * CLIP_SECONDS)
                ) -> tf.Tensor:
  """Mono float32 samples in [-1, 1], zero-padded or cut to `clip_samples`."""
  audio, _ = tf.audio.decode_wav(wav_bytes, desired_channels=1)
  audio = audio[:clip_samples, 0]
  return tf.pad(audio, [[0, clip_samples - tf.shape(audio)[0]]])


def power_spectrogram(samples: tf.Tensor) -> tf.Tensor:
  """|STFT|^2, [frames, FRAME_LENGTH // 2 + 1], centred like librosa."""
  pad = FRAME_LENGTH // 2
  padded = tf.pad(samples, [[pad, pad]], mode='REFLECT')
  stft = tf.signal.stft(padded, FRAME_LENGTH, FRAME_STEP, fft_length=FRAME_LENGTH,
                        window_fn=tf.signal.hann_window, pad_end=False)
  return tf.math.square(tf.abs(stft))


def log_mel(samples: tf.Tensor, num_mels: int = NUM_MELS) -> tf.Tensor:
  """[num_mels, frames] mel power in dB relative to the maximum (>= -TOP_DB)."""
  power = power_spectrogram(samples)
  weights = tf.signal.linear_to_mel_weight_matrix(
      num_mels, FRAME_LENGTH // 2 + 1, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2)
  mel = tf.tensordot(power, weights, 1)
  db = 10.0 * tf.math.log(tf.maximum(mel, 1e-10)) / tf.math.log(10.0)
  db = db - tf.reduce_max(db)
  return tf.transpose(tf.maximum(db, -TOP_DB))


def mfcc(samples: tf.Tensor, num_mfcc: int = NUM_MFCC, num_mels: int = NUM_MELS
         ) -> tf.Tensor:
  """[num_mfcc, frames] MFCCs of the log-mel spectrogram."""
  power = power_spectrogram(samples)
  weights = tf.signal.linear_to_mel_weight_matrix(
      num_mels, FRAME_LENGTH // 2 + 1, SAMPLE_RATE, 0.0, SAMPLE_RATE / 2)
  log_mel_spec = tf.math.log(tf.tensordot(power, weights, 1) + 1e-6)
  return tf.transpose(tf.signal.mfccs_from_log_mel_spectrograms(log_mel_spec)[:, :num_mfcc])


FEATURES = {'logmel': log_mel, 'mfcc': mfcc}


def features_from_file(path: tf.Tensor, kind: str = 'logmel') -> tf.Tensor:
  """[bands, frames, 1] features of the WAV file at `path`."""
  return FEATURES[kind](decode_clip(tf.io.read_file(path)))[..., tf.newaxis]
