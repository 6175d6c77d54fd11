"""The octree answers occupancy and corner look-ups the way a dense grid would."""
import torch

from engine.octree import (cell_corners, corner_keys, descend, morton_decode, morton_encode, occupancy_grid,
                           octree_from_child_masks, octree_from_finest_cells, trilinear_weights)


def sphere_octree(level=5, radius=0.3):
    r = 1 << level
    ax = torch.arange(r)
    xyz = torch.stack(torch.meshgrid(ax, ax, ax, indexing="ij"), -1).reshape(-1, 3)
    inside = (((xyz + 0.5) / r - 0.5).norm(dim=1) < radius)
    return octree_from_finest_cells(morton_encode(xyz[inside]), level), inside.reshape(r, r, r)


def test_morton_round_trip():
    xyz = torch.randint(0, 1 << 20, (1000, 3))
    assert torch.equal(morton_decode(morton_encode(xyz)), xyz)


def test_descend_matches_dense_occupancy():
    octree, dense = sphere_octree()
    points = torch.rand(20000, 3)
    cell_index, occupied, depth = descend(octree, points, 5)
    ijk = (points * 32).floor().long()
    assert torch.equal(occupied, dense[ijk[:, 0], ijk[:, 1], ijk[:, 2]])
    assert torch.equal(morton_encode(ijk[occupied]), octree.cells[5][cell_index[5][occupied]])
    assert (depth[occupied] == 5).all() and (depth[~occupied] < 5).all()
    assert torch.equal(occupancy_grid(octree, 5), dense)


def test_child_masks_alone_rebuild_the_octree():
    octree, _ = sphere_octree()
    rebuilt = octree_from_child_masks(octree.child_mask)
    for a, b in zip(octree.cells, rebuilt.cells):
        assert torch.equal(a, b)


def test_corners_are_shared_between_neighbours_and_weights_sum_to_one():
    octree, dense = sphere_octree(level=4, radius=0.4)
    keys, rows = cell_corners(octree, 4)
    assert keys.numel() < 8 * octree.cells[4].numel()  # shared corners
    xyz = morton_decode(octree.cells[4])
    assert torch.equal(keys[rows[:, 7].long()], corner_keys(4, xyz + 1))
    _, w = trilinear_weights(torch.rand(100, 3), 4)
    assert torch.allclose(w.sum(1), torch.ones(100))


def test_rays_that_miss_everything_render_the_background():
    from engine.field import NeuralField
    from engine.render import render_image
    octree, _ = sphere_octree(level=4)
    field = NeuralField(octree, 2, "vq", bits=3).freeze()
    origins = torch.tensor([[0.0, 0.0, 10.0]]).repeat(4, 1)
    dirs = torch.tensor([[0.0, 0.0, 1.0]]).repeat(4, 1)  # pointing away from the scene
    image = render_image(field, origins, dirs, 2, 2, lod=2, background=(0.2, 0.4, 0.6))
    assert torch.allclose(image, torch.tensor([0.2, 0.4, 0.6]).expand(2, 2, 3))
