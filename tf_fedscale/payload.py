"""Bytes a round really moves: serialized sizes of the broadcast and the update."""

from typing import Any

import tensorflow as tf
import tensorflow_federated as tff


def serialized_nbytes(structure: Any) -> int:
  """Bytes of every tensor in `structure` as `tf.io.serialize_tensor` writes it."""
  return sum(len(tf.io.serialize_tensor(tf.convert_to_tensor(t)).numpy())
             for t in tf.nest.flatten(structure))


def learning_process_payload(process: tff.learning.templates.LearningProcess,
                             state: Any) -> tuple[int, int]:
  """(download, upload) bytes per client for a `tff.learning` process.

  Clients receive the whole model (trainable and non-trainable weights) and
  send back an update of the trainable weights plus its scalar weight: the
  shape every `tff.learning` client work produces before aggregation.
  """
  weights = process.get_model_weights(state)
  download = serialized_nbytes(weights)
  upload = serialized_nbytes(weights.trainable) + serialized_nbytes(tf.constant(0.0))
  return download, upload
